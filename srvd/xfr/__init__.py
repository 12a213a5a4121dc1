"""Zone transfers (AXFR/IXFR, TSIG) and outgoing NOTIFY, served beside the server layer it uses."""
