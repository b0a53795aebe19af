"""Pure mapping: vendor payloads to profiles, segments and desired write-backs. No I/O, no clock."""
