"""Who a request is: the client address behind trusted proxies, identity keys, verified
JWT claims, and the one canonical form of addresses that lists and bans share."""
