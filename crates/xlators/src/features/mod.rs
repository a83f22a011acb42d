//! Feature translators: [`locks`] (`features/locks`), the brick's lock server.

pub mod locks;
