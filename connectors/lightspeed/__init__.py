"""Lightspeed eCom (C-Series, formerly SEOshop / WebshopApp): connector, emulator and demo fixtures."""
