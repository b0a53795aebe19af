"""Silvasoft: relations and sales invoices over the REST API; read-only (no writable field documented)."""
