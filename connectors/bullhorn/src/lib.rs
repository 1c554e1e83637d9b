//! Bullhorn connector.
