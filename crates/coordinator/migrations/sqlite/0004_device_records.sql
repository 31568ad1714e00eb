-- A device's own signed record of its keys (vsigner-records' DeviceRecord, hex): the
-- coordinator stores and serves it, and cannot make one.
ALTER TABLE devices ADD COLUMN record TEXT;
