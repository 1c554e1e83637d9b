//! crmflow library.
