//! Topic registry with MQTT wildcards and fan-out (being written).
