//! Arbitrary text as one JSON line through `engine::Record::from_json` (the fleet server reads
//! agents' lines from the network with it): it must never panic, and a record it accepts must
//! be a fixed point of writing and reading (written, read back and written again: the same
//! line). Non-UTF-8 input is read lossily.
#![no_main]

use engine::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = engine::json_read::parse(&text);
    if let Ok(rec) = Record::from_json(&text) {
        let mut once = String::new();
        rec.write_json(&mut once);
        let again = Record::from_json(&once)
            .unwrap_or_else(|e| panic!("a written record does not read back: {e}: {once}"));
        let mut twice = String::new();
        again.write_json(&mut twice);
        assert_eq!(once, twice, "written, read and written again: the line changed");
    }
});
