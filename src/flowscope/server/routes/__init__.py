"""One router per area of the API; `flowscope.server.app` registers them."""
