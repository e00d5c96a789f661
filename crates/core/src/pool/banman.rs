//! Bans of addresses and subnets.
