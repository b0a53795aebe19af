"""Vendors kept outside crmsync, found through CRMSYNC_VENDOR_PACKAGES=tests.vendors."""
