//! Application protocol parsers. Each looks at the first bytes of a message and either
//! recognises its head or says it is not that protocol.

pub mod http;
