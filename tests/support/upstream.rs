//! A fake LLM API upstream over real TLS. (Filled in by the test-support work.)
