-- add_providers: the Lumen and None providers.
ALTER TYPE provider ADD VALUE 'Lumen';
ALTER TYPE provider ADD VALUE 'None';
