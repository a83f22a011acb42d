//! Every translator type this build of `weft` knows, from every crate that provides some.

use weft_core::Registry;

/// The registry every `weft` command builds graphs against.
pub fn registry() -> Registry {
    let mut r = weft_xlators::registry();
    weft_protocol::register(&mut r);
    weft_python::register(&mut r);
    weft_cluster::register(&mut r);
    r
}
