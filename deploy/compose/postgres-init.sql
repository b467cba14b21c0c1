-- One PostgreSQL server, one database per service (the compose stack; docs/operations.md).
CREATE DATABASE broker OWNER tessera;
CREATE DATABASE provider OWNER tessera;
CREATE DATABASE consumer OWNER tessera;
