"""Operations: metrics counters and their collector, the health probe, systemd notification.
The server layer fills these instruments; they import wire, config, index and answer only."""
