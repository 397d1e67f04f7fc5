"""The campaign dialer: preview outbound campaigns and their calling records."""
