//! kuku-server
