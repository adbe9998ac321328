//! Authentication: the OIDC relying party, provider presets, and bearer credentials.

pub mod machine;
pub mod oidc;
