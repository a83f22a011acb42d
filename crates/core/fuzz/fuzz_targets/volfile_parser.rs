//! Feeds arbitrary text to the volfile parser. Nothing may panic; a volfile that parses
//! prints in canonical form, which parses back to the same canonical text, and every
//! volume's subgraph can be taken.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::volfile::Volfile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(vf) = Volfile::parse(text) {
        let canon = vf.to_string();
        let again = Volfile::parse(&canon).expect("the canonical form parses");
        assert_eq!(again.to_string(), canon);
        for v in &vf.volumes {
            let _ = vf.subgraph(&v.name);
        }
    }
});
