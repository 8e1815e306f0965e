-- add_providers: remove Lumen and None. PostgreSQL has no ALTER TYPE ... DROP VALUE, so the enum
-- is rebuilt; like upstream's DROP VALUE this fails while a machine still uses either value.
ALTER TYPE provider RENAME TO provider_old;
CREATE TYPE provider AS ENUM ('Equinix');
ALTER TABLE machine_provided ALTER COLUMN provider TYPE provider USING provider::text::provider;
DROP TYPE provider_old;
