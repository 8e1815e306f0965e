-- extra_provider_data: drop the extra machine_provided columns and the provider_status enum.
ALTER TABLE machine_provided
    DROP COLUMN provider_reservation_id,
    DROP COLUMN provider_ip_address,
    DROP COLUMN provider_location,
    DROP COLUMN provider_status;
DROP TYPE provider_status;
