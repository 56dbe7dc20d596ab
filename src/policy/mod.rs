//! The policy engine: destinations, clients and rules that decide what happens to a request.
