//! ML simulator benchmark (filled in below).
fn main() {}
