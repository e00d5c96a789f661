//! The address book.
