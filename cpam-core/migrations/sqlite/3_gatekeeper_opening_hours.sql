
ALTER TABLE gatekeepers ADD COLUMN customer_schedule TEXT;
