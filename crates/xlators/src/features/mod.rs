//! Feature translators: [`locks`] (`features/locks`), the brick's lock server, and
//! [`upcall`] (`features/upcall`), which keeps clients' caches coherent.

pub mod locks;
pub mod upcall;
