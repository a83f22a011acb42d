//! Every translator type this build of `weft` knows, from every crate that provides some.

use weft_core::Registry;

/// The registry every `weft` command builds graphs against.
pub fn registry() -> Registry {
    weft_xlators::registry()
}
