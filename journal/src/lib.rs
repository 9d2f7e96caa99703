//! kuku-journal
