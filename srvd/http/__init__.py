"""Discovery documents over HTTP (autoconfig, Autodiscover, Apple profiles, PACC), made from
the index: pure functions from a Table and a domain to bytes, no reactor (docs/architecture.md)."""
