//! Policy files: the parser never panics; a refusal names a line of the file and a
//! problem; an accepted pack decides every purpose on every channel it declares, for the
//! seed contacts, with a rule, a reason, and evidence for anything allowed.

#![no_main]

use consent_ledger::policy::PolicyPack;
use consent_ledger_fuzz::{decide_everything, seed_history};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    match PolicyPack::parse(text) {
        Ok(pack) => {
            for state in seed_history().states() {
                decide_everything(&pack, state);
            }
        }
        Err(error) => {
            assert!(
                error.line <= text.lines().count() + 1,
                "line {} named in a file of {} lines: {}",
                error.line,
                text.lines().count(),
                error.problem
            );
            assert!(!error.problem.is_empty(), "a refusal says what is wrong");
        }
    }
});
