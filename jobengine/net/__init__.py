"""The network edge: the address policy and the pinned HTTP(S) client."""
