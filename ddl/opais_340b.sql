-- PostgreSQL DDL of the 340B OPAIS dimensions (SCD2 history) and the export bookkeeping.
-- Generated from lakehouse/sources/opais_entities.py by lakehouse.sinks.postgres.render_ddl(); a test
-- fails when this file and the code differ. Replace {schema} with the target schema (init_db does).
-- Every statement is idempotent. A version is keyed by (key..., effective_stp); an open version has
-- expiration_stp '9999-12-31 23:59:59' and current_version_flg 'Y'. An export inserts or updates versions; a full
-- export (the first, a Delta table made again, a change feed gone) replaces the table's rows with the Delta
-- history. A key that left the export is a current version with change_type 'DELETE'. The <dimension>_live
-- views hold the live current rows, ce_contract_pharmacy_live joins them for BI (a view whose columns
-- changed is dropped and made again by init_db, keeping its grants); COMMENT ON says what each
-- table, view and column holds. _sequence and _batch_id are the Delta history's lineage; exported_version
-- is the Delta version of the history table that last changed the row.

CREATE SCHEMA IF NOT EXISTS {schema};

-- lakehouse_export: last exported Delta version per table
CREATE TABLE IF NOT EXISTS {schema}.lakehouse_export (
    table_name       TEXT PRIMARY KEY,
    delta_path       TEXT NOT NULL,
    exported_version BIGINT NOT NULL CHECK (exported_version >= 0),
    rows_received    BIGINT NOT NULL,
    rows_written     BIGINT NOT NULL,
    exported_at      TIMESTAMPTZ NOT NULL,
    run_id           TEXT NOT NULL,
    delta_table_id   TEXT,
    delta_commit     TEXT
);
ALTER TABLE {schema}.lakehouse_export ADD COLUMN IF NOT EXISTS delta_table_id TEXT;
ALTER TABLE {schema}.lakehouse_export ADD COLUMN IF NOT EXISTS delta_commit TEXT;

-- dim_ce: covered entities
CREATE TABLE IF NOT EXISTS {schema}.dim_ce (
    id340b                                 VARCHAR(32) COLLATE "C" NOT NULL,
    ce_id                                  BIGINT NOT NULL,
    entity_type                            TEXT,
    name                                   TEXT,
    sub_name                               TEXT,
    participating                          BOOLEAN,
    participating_start_date               TIMESTAMP,
    termination_date                       TIMESTAMP,
    termination_reason                     TEXT,
    grant_number                           TEXT,
    certified_decertified_date             TIMESTAMP,
    edit_date                              TIMESTAMP,
    authorizing_official_name              TEXT,
    authorizing_official_title             TEXT,
    authorizing_official_phone_number      TEXT,
    primary_contact_name                   TEXT,
    primary_contact_title                  TEXT,
    primary_contact_phone_number           TEXT,
    primary_contact_phone_number_extension TEXT,
    effective_stp                          TIMESTAMP NOT NULL,
    expiration_stp                         TIMESTAMP NOT NULL DEFAULT '9999-12-31 23:59:59',
    current_version_flg                    CHAR(1) NOT NULL CHECK (current_version_flg IN ('Y', 'N')),
    change_type                            VARCHAR(6) NOT NULL CHECK (change_type IN ('INSERT', 'UPDATE', 'DELETE')),
    _sequence                              TEXT NOT NULL,
    _batch_id                              BIGINT NOT NULL,
    exported_version                       BIGINT NOT NULL,
    PRIMARY KEY (id340b, ce_id, effective_stp)
);
CREATE INDEX IF NOT EXISTS dim_ce_current ON {schema}.dim_ce (id340b, ce_id)
    WHERE current_version_flg = 'Y';

-- dim_ce_medicaid: Medicaid numbers of a covered entity
CREATE TABLE IF NOT EXISTS {schema}.dim_ce_medicaid (
    id340b              VARCHAR(32) COLLATE "C" NOT NULL,
    ce_id               BIGINT NOT NULL,
    content_key         VARCHAR(64) COLLATE "C" NOT NULL,
    medicaid_number     TEXT,
    state               VARCHAR(2),
    effective_stp       TIMESTAMP NOT NULL,
    expiration_stp      TIMESTAMP NOT NULL DEFAULT '9999-12-31 23:59:59',
    current_version_flg CHAR(1) NOT NULL CHECK (current_version_flg IN ('Y', 'N')),
    change_type         VARCHAR(6) NOT NULL CHECK (change_type IN ('INSERT', 'UPDATE', 'DELETE')),
    _sequence           TEXT NOT NULL,
    _batch_id           BIGINT NOT NULL,
    exported_version    BIGINT NOT NULL,
    PRIMARY KEY (id340b, ce_id, content_key, effective_stp)
);
CREATE INDEX IF NOT EXISTS dim_ce_medicaid_current ON {schema}.dim_ce_medicaid (id340b, ce_id, content_key)
    WHERE current_version_flg = 'Y';

-- dim_ce_npi: NPIs of a covered entity
CREATE TABLE IF NOT EXISTS {schema}.dim_ce_npi (
    id340b              VARCHAR(32) COLLATE "C" NOT NULL,
    ce_id               BIGINT NOT NULL,
    content_key         VARCHAR(64) COLLATE "C" NOT NULL,
    npi_number          VARCHAR(10),
    state               VARCHAR(2),
    effective_stp       TIMESTAMP NOT NULL,
    expiration_stp      TIMESTAMP NOT NULL DEFAULT '9999-12-31 23:59:59',
    current_version_flg CHAR(1) NOT NULL CHECK (current_version_flg IN ('Y', 'N')),
    change_type         VARCHAR(6) NOT NULL CHECK (change_type IN ('INSERT', 'UPDATE', 'DELETE')),
    _sequence           TEXT NOT NULL,
    _batch_id           BIGINT NOT NULL,
    exported_version    BIGINT NOT NULL,
    PRIMARY KEY (id340b, ce_id, content_key, effective_stp)
);
CREATE INDEX IF NOT EXISTS dim_ce_npi_current ON {schema}.dim_ce_npi (id340b, ce_id, content_key)
    WHERE current_version_flg = 'Y';

-- dim_ce_street_address: street address of a covered entity
CREATE TABLE IF NOT EXISTS {schema}.dim_ce_street_address (
    id340b              VARCHAR(32) COLLATE "C" NOT NULL,
    ce_id               BIGINT NOT NULL,
    address_line1       TEXT,
    address_line2       TEXT,
    city                TEXT,
    state               VARCHAR(2),
    zip                 VARCHAR(10),
    zip4                VARCHAR(4),
    effective_stp       TIMESTAMP NOT NULL,
    expiration_stp      TIMESTAMP NOT NULL DEFAULT '9999-12-31 23:59:59',
    current_version_flg CHAR(1) NOT NULL CHECK (current_version_flg IN ('Y', 'N')),
    change_type         VARCHAR(6) NOT NULL CHECK (change_type IN ('INSERT', 'UPDATE', 'DELETE')),
    _sequence           TEXT NOT NULL,
    _batch_id           BIGINT NOT NULL,
    exported_version    BIGINT NOT NULL,
    PRIMARY KEY (id340b, ce_id, effective_stp)
);
CREATE INDEX IF NOT EXISTS dim_ce_street_address_current ON {schema}.dim_ce_street_address (id340b, ce_id)
    WHERE current_version_flg = 'Y';

-- dim_ce_billing_address: billing address of a covered entity
CREATE TABLE IF NOT EXISTS {schema}.dim_ce_billing_address (
    id340b              VARCHAR(32) COLLATE "C" NOT NULL,
    ce_id               BIGINT NOT NULL,
    organization        TEXT,
    address_line1       TEXT,
    address_line2       TEXT,
    city                TEXT,
    state               VARCHAR(2),
    zip                 VARCHAR(10),
    zip4                VARCHAR(4),
    effective_stp       TIMESTAMP NOT NULL,
    expiration_stp      TIMESTAMP NOT NULL DEFAULT '9999-12-31 23:59:59',
    current_version_flg CHAR(1) NOT NULL CHECK (current_version_flg IN ('Y', 'N')),
    change_type         VARCHAR(6) NOT NULL CHECK (change_type IN ('INSERT', 'UPDATE', 'DELETE')),
    _sequence           TEXT NOT NULL,
    _batch_id           BIGINT NOT NULL,
    exported_version    BIGINT NOT NULL,
    PRIMARY KEY (id340b, ce_id, effective_stp)
);
CREATE INDEX IF NOT EXISTS dim_ce_billing_address_current ON {schema}.dim_ce_billing_address (id340b, ce_id)
    WHERE current_version_flg = 'Y';

-- dim_ce_shipping_address: shipping addresses of a covered entity
CREATE TABLE IF NOT EXISTS {schema}.dim_ce_shipping_address (
    id340b                 VARCHAR(32) COLLATE "C" NOT NULL,
    ce_id                  BIGINT NOT NULL,
    content_key            VARCHAR(64) COLLATE "C" NOT NULL,
    address_line1          TEXT,
    address_line2          TEXT,
    city                   TEXT,
    state                  VARCHAR(2),
    zip                    VARCHAR(10),
    zip4                   VARCHAR(4),
    is_340b_street_address BOOLEAN,
    effective_stp          TIMESTAMP NOT NULL,
    expiration_stp         TIMESTAMP NOT NULL DEFAULT '9999-12-31 23:59:59',
    current_version_flg    CHAR(1) NOT NULL CHECK (current_version_flg IN ('Y', 'N')),
    change_type            VARCHAR(6) NOT NULL CHECK (change_type IN ('INSERT', 'UPDATE', 'DELETE')),
    _sequence              TEXT NOT NULL,
    _batch_id              BIGINT NOT NULL,
    exported_version       BIGINT NOT NULL,
    PRIMARY KEY (id340b, ce_id, content_key, effective_stp)
);
CREATE INDEX IF NOT EXISTS dim_ce_shipping_address_current ON {schema}.dim_ce_shipping_address (id340b, ce_id, content_key)
    WHERE current_version_flg = 'Y';

-- dim_ce_contract_pharmacy: contracts between a covered entity and a pharmacy
CREATE TABLE IF NOT EXISTS {schema}.dim_ce_contract_pharmacy (
    id340b                     VARCHAR(32) COLLATE "C" NOT NULL,
    ce_id                      BIGINT NOT NULL,
    contract_id                BIGINT NOT NULL,
    pharmacy_id                BIGINT,
    begin_date                 TIMESTAMP,
    termination_date           TIMESTAMP,
    certified_decertified_date TIMESTAMP,
    edit_date                  TIMESTAMP,
    comments                   TEXT,
    effective_stp              TIMESTAMP NOT NULL,
    expiration_stp             TIMESTAMP NOT NULL DEFAULT '9999-12-31 23:59:59',
    current_version_flg        CHAR(1) NOT NULL CHECK (current_version_flg IN ('Y', 'N')),
    change_type                VARCHAR(6) NOT NULL CHECK (change_type IN ('INSERT', 'UPDATE', 'DELETE')),
    _sequence                  TEXT NOT NULL,
    _batch_id                  BIGINT NOT NULL,
    exported_version           BIGINT NOT NULL,
    PRIMARY KEY (id340b, ce_id, contract_id, effective_stp)
);
CREATE INDEX IF NOT EXISTS dim_ce_contract_pharmacy_current ON {schema}.dim_ce_contract_pharmacy (id340b, ce_id, contract_id)
    WHERE current_version_flg = 'Y';

-- dim_pharmacy: contract pharmacies
CREATE TABLE IF NOT EXISTS {schema}.dim_pharmacy (
    pharmacy_id         BIGINT NOT NULL,
    name                TEXT,
    address_line1       TEXT,
    address_line2       TEXT,
    city                TEXT,
    state               VARCHAR(2),
    zip                 VARCHAR(10),
    zip4                VARCHAR(4),
    phone_number        TEXT,
    effective_stp       TIMESTAMP NOT NULL,
    expiration_stp      TIMESTAMP NOT NULL DEFAULT '9999-12-31 23:59:59',
    current_version_flg CHAR(1) NOT NULL CHECK (current_version_flg IN ('Y', 'N')),
    change_type         VARCHAR(6) NOT NULL CHECK (change_type IN ('INSERT', 'UPDATE', 'DELETE')),
    _sequence           TEXT NOT NULL,
    _batch_id           BIGINT NOT NULL,
    exported_version    BIGINT NOT NULL,
    PRIMARY KEY (pharmacy_id, effective_stp)
);
CREATE INDEX IF NOT EXISTS dim_pharmacy_current ON {schema}.dim_pharmacy (pharmacy_id)
    WHERE current_version_flg = 'Y';

-- BI views: the live current rows of each dimension, and the usual three-way join
CREATE OR REPLACE VIEW {schema}.dim_ce_live AS
    SELECT
        id340b, ce_id, entity_type, name, sub_name, participating, participating_start_date,
        termination_date, termination_reason, grant_number, certified_decertified_date, edit_date,
        authorizing_official_name, authorizing_official_title, authorizing_official_phone_number,
        primary_contact_name, primary_contact_title, primary_contact_phone_number,
        primary_contact_phone_number_extension, effective_stp
    FROM {schema}.dim_ce
    WHERE current_version_flg = 'Y' AND change_type <> 'DELETE';
CREATE OR REPLACE VIEW {schema}.dim_ce_medicaid_live AS
    SELECT
        id340b, ce_id, content_key, medicaid_number, state, effective_stp
    FROM {schema}.dim_ce_medicaid
    WHERE current_version_flg = 'Y' AND change_type <> 'DELETE';
CREATE OR REPLACE VIEW {schema}.dim_ce_npi_live AS
    SELECT
        id340b, ce_id, content_key, npi_number, state, effective_stp
    FROM {schema}.dim_ce_npi
    WHERE current_version_flg = 'Y' AND change_type <> 'DELETE';
CREATE OR REPLACE VIEW {schema}.dim_ce_street_address_live AS
    SELECT
        id340b, ce_id, address_line1, address_line2, city, state, zip, zip4, effective_stp
    FROM {schema}.dim_ce_street_address
    WHERE current_version_flg = 'Y' AND change_type <> 'DELETE';
CREATE OR REPLACE VIEW {schema}.dim_ce_billing_address_live AS
    SELECT
        id340b, ce_id, organization, address_line1, address_line2, city, state, zip, zip4,
        effective_stp
    FROM {schema}.dim_ce_billing_address
    WHERE current_version_flg = 'Y' AND change_type <> 'DELETE';
CREATE OR REPLACE VIEW {schema}.dim_ce_shipping_address_live AS
    SELECT
        id340b, ce_id, content_key, address_line1, address_line2, city, state, zip, zip4,
        is_340b_street_address, effective_stp
    FROM {schema}.dim_ce_shipping_address
    WHERE current_version_flg = 'Y' AND change_type <> 'DELETE';
CREATE OR REPLACE VIEW {schema}.dim_ce_contract_pharmacy_live AS
    SELECT
        id340b, ce_id, contract_id, pharmacy_id, begin_date, termination_date,
        certified_decertified_date, edit_date, comments, effective_stp
    FROM {schema}.dim_ce_contract_pharmacy
    WHERE current_version_flg = 'Y' AND change_type <> 'DELETE';
CREATE OR REPLACE VIEW {schema}.dim_pharmacy_live AS
    SELECT
        pharmacy_id, name, address_line1, address_line2, city, state, zip, zip4, phone_number,
        effective_stp
    FROM {schema}.dim_pharmacy
    WHERE current_version_flg = 'Y' AND change_type <> 'DELETE';
CREATE OR REPLACE VIEW {schema}.ce_contract_pharmacy_live AS
    SELECT
        ce.id340b           AS id340b,
        ce.ce_id            AS ce_id,
        ce.entity_type      AS entity_type,
        ce.name             AS ce_name,
        ce.sub_name         AS ce_sub_name,
        cp.contract_id      AS contract_id,
        cp.begin_date       AS contract_begin_date,
        cp.termination_date AS contract_termination_date,
        p.pharmacy_id       AS pharmacy_id,
        p.name              AS pharmacy_name,
        p.address_line1     AS pharmacy_address_line1,
        p.city              AS pharmacy_city,
        p.state             AS pharmacy_state,
        p.zip               AS pharmacy_zip,
        p.phone_number      AS pharmacy_phone_number
    FROM {schema}.dim_ce_live ce
    JOIN {schema}.dim_ce_contract_pharmacy_live cp ON cp.id340b = ce.id340b AND cp.ce_id = ce.ce_id
    JOIN {schema}.dim_pharmacy_live p ON p.pharmacy_id = cp.pharmacy_id;

-- What every table, view and column holds
COMMENT ON TABLE {schema}.lakehouse_export IS 'last exported Delta version of each dimension';
COMMENT ON COLUMN {schema}.lakehouse_export.table_name IS 'the exported dimension';
COMMENT ON COLUMN {schema}.lakehouse_export.delta_path IS 'location of the dimension''s Delta history table';
COMMENT ON COLUMN {schema}.lakehouse_export.exported_version IS 'the last Delta version exported: the next export reads the change feed after it';
COMMENT ON COLUMN {schema}.lakehouse_export.rows_received IS 'rows the last export read from the change feed';
COMMENT ON COLUMN {schema}.lakehouse_export.rows_written IS 'rows the last export inserted, updated or (a full export) deleted';
COMMENT ON COLUMN {schema}.lakehouse_export.exported_at IS 'when the last export committed';
COMMENT ON COLUMN {schema}.lakehouse_export.run_id IS 'the run that made the last export';
COMMENT ON COLUMN {schema}.lakehouse_export.delta_table_id IS 'id of the Delta table exported (its metadata id): a table made again at the same path has another, and is exported in full; NULL in a row written before this column, whose table is exported in full once';
COMMENT ON COLUMN {schema}.lakehouse_export.delta_commit IS 'digest of the exported version''s commit file (_delta_log/<version>.json): a table put back from an older copy that reached this version again has another commit there, and is exported in full; NULL in a row written before this column (taken as matching)';
COMMENT ON TABLE {schema}.dim_ce IS 'covered entities: history. One row per version (SCD2) from the HRSA 340B OPAIS daily export. A change closes the current version (expiration_stp set, current_version_flg N) and adds the new one; a key that leaves the export gets a current version with change_type DELETE that keeps its last values. Current live rows: current_version_flg = ''Y'' AND change_type <> ''DELETE'' (the view dim_ce_live).';
COMMENT ON COLUMN {schema}.dim_ce.id340b IS '340B ID of the covered entity, as HRSA assigns it (e.g. DSH050108)';
COMMENT ON COLUMN {schema}.dim_ce.ce_id IS 'HRSA''s numeric id of the covered entity (ceId); with id340b, the entity''s key';
COMMENT ON COLUMN {schema}.dim_ce.entity_type IS 'covered entity type (e.g. DSH, CAH, FQHC)';
COMMENT ON COLUMN {schema}.dim_ce.name IS 'name of the covered entity';
COMMENT ON COLUMN {schema}.dim_ce.sub_name IS 'sub-name of the covered entity (site, department)';
COMMENT ON COLUMN {schema}.dim_ce.participating IS 'whether the entity takes part in the 340B program';
COMMENT ON COLUMN {schema}.dim_ce.participating_start_date IS 'when the entity''s participation started';
COMMENT ON COLUMN {schema}.dim_ce.termination_date IS 'when the entity''s participation ended (NULL while it participates)';
COMMENT ON COLUMN {schema}.dim_ce.termination_reason IS 'why the participation ended';
COMMENT ON COLUMN {schema}.dim_ce.grant_number IS 'grant or contract number that makes the entity eligible';
COMMENT ON COLUMN {schema}.dim_ce.certified_decertified_date IS 'when the entity was last certified or decertified';
COMMENT ON COLUMN {schema}.dim_ce.edit_date IS 'when HRSA last edited the entity''s record (editDate)';
COMMENT ON COLUMN {schema}.dim_ce.authorizing_official_name IS 'name of the entity''s authorizing official';
COMMENT ON COLUMN {schema}.dim_ce.authorizing_official_title IS 'title of the entity''s authorizing official';
COMMENT ON COLUMN {schema}.dim_ce.authorizing_official_phone_number IS 'phone number of the entity''s authorizing official';
COMMENT ON COLUMN {schema}.dim_ce.primary_contact_name IS 'name of the entity''s primary contact';
COMMENT ON COLUMN {schema}.dim_ce.primary_contact_title IS 'title of the entity''s primary contact';
COMMENT ON COLUMN {schema}.dim_ce.primary_contact_phone_number IS 'phone number of the entity''s primary contact';
COMMENT ON COLUMN {schema}.dim_ce.primary_contact_phone_number_extension IS 'phone extension of the entity''s primary contact';
COMMENT ON COLUMN {schema}.dim_ce.effective_stp IS 'start of this version''s validity (UTC, inclusive): the date of the export that brought it';
COMMENT ON COLUMN {schema}.dim_ce.expiration_stp IS 'end of this version''s validity (UTC, exclusive); 9999-12-31 23:59:59 while it is the current version';
COMMENT ON COLUMN {schema}.dim_ce.current_version_flg IS 'Y for the newest version of its key (also when that version is a deletion), N otherwise';
COMMENT ON COLUMN {schema}.dim_ce.change_type IS 'what made this version: INSERT (new key), UPDATE (changed values) or DELETE (the key left the export; the row keeps its last values)';
COMMENT ON COLUMN {schema}.dim_ce._sequence IS 'the engine''s order of this key''s changes (lineage)';
COMMENT ON COLUMN {schema}.dim_ce._batch_id IS 'micro-batch of the Delta history that wrote this version (lineage)';
COMMENT ON COLUMN {schema}.dim_ce.exported_version IS 'Delta version of the history table that last changed this row';
COMMENT ON VIEW {schema}.dim_ce_live IS 'covered entities: the live current rows of dim_ce (current_version_flg = ''Y'' AND change_type <> ''DELETE'').';
COMMENT ON COLUMN {schema}.dim_ce_live.id340b IS '340B ID of the covered entity, as HRSA assigns it (e.g. DSH050108)';
COMMENT ON COLUMN {schema}.dim_ce_live.ce_id IS 'HRSA''s numeric id of the covered entity (ceId); with id340b, the entity''s key';
COMMENT ON COLUMN {schema}.dim_ce_live.entity_type IS 'covered entity type (e.g. DSH, CAH, FQHC)';
COMMENT ON COLUMN {schema}.dim_ce_live.name IS 'name of the covered entity';
COMMENT ON COLUMN {schema}.dim_ce_live.sub_name IS 'sub-name of the covered entity (site, department)';
COMMENT ON COLUMN {schema}.dim_ce_live.participating IS 'whether the entity takes part in the 340B program';
COMMENT ON COLUMN {schema}.dim_ce_live.participating_start_date IS 'when the entity''s participation started';
COMMENT ON COLUMN {schema}.dim_ce_live.termination_date IS 'when the entity''s participation ended (NULL while it participates)';
COMMENT ON COLUMN {schema}.dim_ce_live.termination_reason IS 'why the participation ended';
COMMENT ON COLUMN {schema}.dim_ce_live.grant_number IS 'grant or contract number that makes the entity eligible';
COMMENT ON COLUMN {schema}.dim_ce_live.certified_decertified_date IS 'when the entity was last certified or decertified';
COMMENT ON COLUMN {schema}.dim_ce_live.edit_date IS 'when HRSA last edited the entity''s record (editDate)';
COMMENT ON COLUMN {schema}.dim_ce_live.authorizing_official_name IS 'name of the entity''s authorizing official';
COMMENT ON COLUMN {schema}.dim_ce_live.authorizing_official_title IS 'title of the entity''s authorizing official';
COMMENT ON COLUMN {schema}.dim_ce_live.authorizing_official_phone_number IS 'phone number of the entity''s authorizing official';
COMMENT ON COLUMN {schema}.dim_ce_live.primary_contact_name IS 'name of the entity''s primary contact';
COMMENT ON COLUMN {schema}.dim_ce_live.primary_contact_title IS 'title of the entity''s primary contact';
COMMENT ON COLUMN {schema}.dim_ce_live.primary_contact_phone_number IS 'phone number of the entity''s primary contact';
COMMENT ON COLUMN {schema}.dim_ce_live.primary_contact_phone_number_extension IS 'phone extension of the entity''s primary contact';
COMMENT ON COLUMN {schema}.dim_ce_live.effective_stp IS 'since when this version is current (UTC)';
COMMENT ON TABLE {schema}.dim_ce_medicaid IS 'Medicaid numbers of a covered entity: history. One row per version (SCD2) from the HRSA 340B OPAIS daily export. A change closes the current version (expiration_stp set, current_version_flg N) and adds the new one; a key that leaves the export gets a current version with change_type DELETE that keeps its last values. Current live rows: current_version_flg = ''Y'' AND change_type <> ''DELETE'' (the view dim_ce_medicaid_live).';
COMMENT ON COLUMN {schema}.dim_ce_medicaid.id340b IS '340B ID of the covered entity, as HRSA assigns it (e.g. DSH050108)';
COMMENT ON COLUMN {schema}.dim_ce_medicaid.ce_id IS 'HRSA''s numeric id of the covered entity (ceId); with id340b, the entity''s key';
COMMENT ON COLUMN {schema}.dim_ce_medicaid.content_key IS 'SHA-256 (hex) of the record''s content: the key of a record without an id of its own, so a changed record is a deletion plus an insertion';
COMMENT ON COLUMN {schema}.dim_ce_medicaid.medicaid_number IS 'Medicaid billing number of the entity';
COMMENT ON COLUMN {schema}.dim_ce_medicaid.state IS 'state that issued the Medicaid number';
COMMENT ON COLUMN {schema}.dim_ce_medicaid.effective_stp IS 'start of this version''s validity (UTC, inclusive): the date of the export that brought it';
COMMENT ON COLUMN {schema}.dim_ce_medicaid.expiration_stp IS 'end of this version''s validity (UTC, exclusive); 9999-12-31 23:59:59 while it is the current version';
COMMENT ON COLUMN {schema}.dim_ce_medicaid.current_version_flg IS 'Y for the newest version of its key (also when that version is a deletion), N otherwise';
COMMENT ON COLUMN {schema}.dim_ce_medicaid.change_type IS 'what made this version: INSERT (new key), UPDATE (changed values) or DELETE (the key left the export; the row keeps its last values)';
COMMENT ON COLUMN {schema}.dim_ce_medicaid._sequence IS 'the engine''s order of this key''s changes (lineage)';
COMMENT ON COLUMN {schema}.dim_ce_medicaid._batch_id IS 'micro-batch of the Delta history that wrote this version (lineage)';
COMMENT ON COLUMN {schema}.dim_ce_medicaid.exported_version IS 'Delta version of the history table that last changed this row';
COMMENT ON VIEW {schema}.dim_ce_medicaid_live IS 'Medicaid numbers of a covered entity: the live current rows of dim_ce_medicaid (current_version_flg = ''Y'' AND change_type <> ''DELETE'').';
COMMENT ON COLUMN {schema}.dim_ce_medicaid_live.id340b IS '340B ID of the covered entity, as HRSA assigns it (e.g. DSH050108)';
COMMENT ON COLUMN {schema}.dim_ce_medicaid_live.ce_id IS 'HRSA''s numeric id of the covered entity (ceId); with id340b, the entity''s key';
COMMENT ON COLUMN {schema}.dim_ce_medicaid_live.content_key IS 'SHA-256 (hex) of the record''s content: the key of a record without an id of its own, so a changed record is a deletion plus an insertion';
COMMENT ON COLUMN {schema}.dim_ce_medicaid_live.medicaid_number IS 'Medicaid billing number of the entity';
COMMENT ON COLUMN {schema}.dim_ce_medicaid_live.state IS 'state that issued the Medicaid number';
COMMENT ON COLUMN {schema}.dim_ce_medicaid_live.effective_stp IS 'since when this version is current (UTC)';
COMMENT ON TABLE {schema}.dim_ce_npi IS 'NPIs of a covered entity: history. One row per version (SCD2) from the HRSA 340B OPAIS daily export. A change closes the current version (expiration_stp set, current_version_flg N) and adds the new one; a key that leaves the export gets a current version with change_type DELETE that keeps its last values. Current live rows: current_version_flg = ''Y'' AND change_type <> ''DELETE'' (the view dim_ce_npi_live).';
COMMENT ON COLUMN {schema}.dim_ce_npi.id340b IS '340B ID of the covered entity, as HRSA assigns it (e.g. DSH050108)';
COMMENT ON COLUMN {schema}.dim_ce_npi.ce_id IS 'HRSA''s numeric id of the covered entity (ceId); with id340b, the entity''s key';
COMMENT ON COLUMN {schema}.dim_ce_npi.content_key IS 'SHA-256 (hex) of the record''s content: the key of a record without an id of its own, so a changed record is a deletion plus an insertion';
COMMENT ON COLUMN {schema}.dim_ce_npi.npi_number IS 'National Provider Identifier of the entity (10 digits, leading zeros kept)';
COMMENT ON COLUMN {schema}.dim_ce_npi.state IS 'state of the NPI''s practice location';
COMMENT ON COLUMN {schema}.dim_ce_npi.effective_stp IS 'start of this version''s validity (UTC, inclusive): the date of the export that brought it';
COMMENT ON COLUMN {schema}.dim_ce_npi.expiration_stp IS 'end of this version''s validity (UTC, exclusive); 9999-12-31 23:59:59 while it is the current version';
COMMENT ON COLUMN {schema}.dim_ce_npi.current_version_flg IS 'Y for the newest version of its key (also when that version is a deletion), N otherwise';
COMMENT ON COLUMN {schema}.dim_ce_npi.change_type IS 'what made this version: INSERT (new key), UPDATE (changed values) or DELETE (the key left the export; the row keeps its last values)';
COMMENT ON COLUMN {schema}.dim_ce_npi._sequence IS 'the engine''s order of this key''s changes (lineage)';
COMMENT ON COLUMN {schema}.dim_ce_npi._batch_id IS 'micro-batch of the Delta history that wrote this version (lineage)';
COMMENT ON COLUMN {schema}.dim_ce_npi.exported_version IS 'Delta version of the history table that last changed this row';
COMMENT ON VIEW {schema}.dim_ce_npi_live IS 'NPIs of a covered entity: the live current rows of dim_ce_npi (current_version_flg = ''Y'' AND change_type <> ''DELETE'').';
COMMENT ON COLUMN {schema}.dim_ce_npi_live.id340b IS '340B ID of the covered entity, as HRSA assigns it (e.g. DSH050108)';
COMMENT ON COLUMN {schema}.dim_ce_npi_live.ce_id IS 'HRSA''s numeric id of the covered entity (ceId); with id340b, the entity''s key';
COMMENT ON COLUMN {schema}.dim_ce_npi_live.content_key IS 'SHA-256 (hex) of the record''s content: the key of a record without an id of its own, so a changed record is a deletion plus an insertion';
COMMENT ON COLUMN {schema}.dim_ce_npi_live.npi_number IS 'National Provider Identifier of the entity (10 digits, leading zeros kept)';
COMMENT ON COLUMN {schema}.dim_ce_npi_live.state IS 'state of the NPI''s practice location';
COMMENT ON COLUMN {schema}.dim_ce_npi_live.effective_stp IS 'since when this version is current (UTC)';
COMMENT ON TABLE {schema}.dim_ce_street_address IS 'street address of a covered entity: history. One row per version (SCD2) from the HRSA 340B OPAIS daily export. A change closes the current version (expiration_stp set, current_version_flg N) and adds the new one; a key that leaves the export gets a current version with change_type DELETE that keeps its last values. Current live rows: current_version_flg = ''Y'' AND change_type <> ''DELETE'' (the view dim_ce_street_address_live).';
COMMENT ON COLUMN {schema}.dim_ce_street_address.id340b IS '340B ID of the covered entity, as HRSA assigns it (e.g. DSH050108)';
COMMENT ON COLUMN {schema}.dim_ce_street_address.ce_id IS 'HRSA''s numeric id of the covered entity (ceId); with id340b, the entity''s key';
COMMENT ON COLUMN {schema}.dim_ce_street_address.address_line1 IS 'first address line';
COMMENT ON COLUMN {schema}.dim_ce_street_address.address_line2 IS 'second address line';
COMMENT ON COLUMN {schema}.dim_ce_street_address.city IS 'city';
COMMENT ON COLUMN {schema}.dim_ce_street_address.state IS 'US state or territory code';
COMMENT ON COLUMN {schema}.dim_ce_street_address.zip IS 'ZIP code (leading zeros kept)';
COMMENT ON COLUMN {schema}.dim_ce_street_address.zip4 IS 'ZIP+4 extension';
COMMENT ON COLUMN {schema}.dim_ce_street_address.effective_stp IS 'start of this version''s validity (UTC, inclusive): the date of the export that brought it';
COMMENT ON COLUMN {schema}.dim_ce_street_address.expiration_stp IS 'end of this version''s validity (UTC, exclusive); 9999-12-31 23:59:59 while it is the current version';
COMMENT ON COLUMN {schema}.dim_ce_street_address.current_version_flg IS 'Y for the newest version of its key (also when that version is a deletion), N otherwise';
COMMENT ON COLUMN {schema}.dim_ce_street_address.change_type IS 'what made this version: INSERT (new key), UPDATE (changed values) or DELETE (the key left the export; the row keeps its last values)';
COMMENT ON COLUMN {schema}.dim_ce_street_address._sequence IS 'the engine''s order of this key''s changes (lineage)';
COMMENT ON COLUMN {schema}.dim_ce_street_address._batch_id IS 'micro-batch of the Delta history that wrote this version (lineage)';
COMMENT ON COLUMN {schema}.dim_ce_street_address.exported_version IS 'Delta version of the history table that last changed this row';
COMMENT ON VIEW {schema}.dim_ce_street_address_live IS 'street address of a covered entity: the live current rows of dim_ce_street_address (current_version_flg = ''Y'' AND change_type <> ''DELETE'').';
COMMENT ON COLUMN {schema}.dim_ce_street_address_live.id340b IS '340B ID of the covered entity, as HRSA assigns it (e.g. DSH050108)';
COMMENT ON COLUMN {schema}.dim_ce_street_address_live.ce_id IS 'HRSA''s numeric id of the covered entity (ceId); with id340b, the entity''s key';
COMMENT ON COLUMN {schema}.dim_ce_street_address_live.address_line1 IS 'first address line';
COMMENT ON COLUMN {schema}.dim_ce_street_address_live.address_line2 IS 'second address line';
COMMENT ON COLUMN {schema}.dim_ce_street_address_live.city IS 'city';
COMMENT ON COLUMN {schema}.dim_ce_street_address_live.state IS 'US state or territory code';
COMMENT ON COLUMN {schema}.dim_ce_street_address_live.zip IS 'ZIP code (leading zeros kept)';
COMMENT ON COLUMN {schema}.dim_ce_street_address_live.zip4 IS 'ZIP+4 extension';
COMMENT ON COLUMN {schema}.dim_ce_street_address_live.effective_stp IS 'since when this version is current (UTC)';
COMMENT ON TABLE {schema}.dim_ce_billing_address IS 'billing address of a covered entity: history. One row per version (SCD2) from the HRSA 340B OPAIS daily export. A change closes the current version (expiration_stp set, current_version_flg N) and adds the new one; a key that leaves the export gets a current version with change_type DELETE that keeps its last values. Current live rows: current_version_flg = ''Y'' AND change_type <> ''DELETE'' (the view dim_ce_billing_address_live).';
COMMENT ON COLUMN {schema}.dim_ce_billing_address.id340b IS '340B ID of the covered entity, as HRSA assigns it (e.g. DSH050108)';
COMMENT ON COLUMN {schema}.dim_ce_billing_address.ce_id IS 'HRSA''s numeric id of the covered entity (ceId); with id340b, the entity''s key';
COMMENT ON COLUMN {schema}.dim_ce_billing_address.organization IS 'organization named on the billing address';
COMMENT ON COLUMN {schema}.dim_ce_billing_address.address_line1 IS 'first address line';
COMMENT ON COLUMN {schema}.dim_ce_billing_address.address_line2 IS 'second address line';
COMMENT ON COLUMN {schema}.dim_ce_billing_address.city IS 'city';
COMMENT ON COLUMN {schema}.dim_ce_billing_address.state IS 'US state or territory code';
COMMENT ON COLUMN {schema}.dim_ce_billing_address.zip IS 'ZIP code (leading zeros kept)';
COMMENT ON COLUMN {schema}.dim_ce_billing_address.zip4 IS 'ZIP+4 extension';
COMMENT ON COLUMN {schema}.dim_ce_billing_address.effective_stp IS 'start of this version''s validity (UTC, inclusive): the date of the export that brought it';
COMMENT ON COLUMN {schema}.dim_ce_billing_address.expiration_stp IS 'end of this version''s validity (UTC, exclusive); 9999-12-31 23:59:59 while it is the current version';
COMMENT ON COLUMN {schema}.dim_ce_billing_address.current_version_flg IS 'Y for the newest version of its key (also when that version is a deletion), N otherwise';
COMMENT ON COLUMN {schema}.dim_ce_billing_address.change_type IS 'what made this version: INSERT (new key), UPDATE (changed values) or DELETE (the key left the export; the row keeps its last values)';
COMMENT ON COLUMN {schema}.dim_ce_billing_address._sequence IS 'the engine''s order of this key''s changes (lineage)';
COMMENT ON COLUMN {schema}.dim_ce_billing_address._batch_id IS 'micro-batch of the Delta history that wrote this version (lineage)';
COMMENT ON COLUMN {schema}.dim_ce_billing_address.exported_version IS 'Delta version of the history table that last changed this row';
COMMENT ON VIEW {schema}.dim_ce_billing_address_live IS 'billing address of a covered entity: the live current rows of dim_ce_billing_address (current_version_flg = ''Y'' AND change_type <> ''DELETE'').';
COMMENT ON COLUMN {schema}.dim_ce_billing_address_live.id340b IS '340B ID of the covered entity, as HRSA assigns it (e.g. DSH050108)';
COMMENT ON COLUMN {schema}.dim_ce_billing_address_live.ce_id IS 'HRSA''s numeric id of the covered entity (ceId); with id340b, the entity''s key';
COMMENT ON COLUMN {schema}.dim_ce_billing_address_live.organization IS 'organization named on the billing address';
COMMENT ON COLUMN {schema}.dim_ce_billing_address_live.address_line1 IS 'first address line';
COMMENT ON COLUMN {schema}.dim_ce_billing_address_live.address_line2 IS 'second address line';
COMMENT ON COLUMN {schema}.dim_ce_billing_address_live.city IS 'city';
COMMENT ON COLUMN {schema}.dim_ce_billing_address_live.state IS 'US state or territory code';
COMMENT ON COLUMN {schema}.dim_ce_billing_address_live.zip IS 'ZIP code (leading zeros kept)';
COMMENT ON COLUMN {schema}.dim_ce_billing_address_live.zip4 IS 'ZIP+4 extension';
COMMENT ON COLUMN {schema}.dim_ce_billing_address_live.effective_stp IS 'since when this version is current (UTC)';
COMMENT ON TABLE {schema}.dim_ce_shipping_address IS 'shipping addresses of a covered entity: history. One row per version (SCD2) from the HRSA 340B OPAIS daily export. A change closes the current version (expiration_stp set, current_version_flg N) and adds the new one; a key that leaves the export gets a current version with change_type DELETE that keeps its last values. Current live rows: current_version_flg = ''Y'' AND change_type <> ''DELETE'' (the view dim_ce_shipping_address_live).';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address.id340b IS '340B ID of the covered entity, as HRSA assigns it (e.g. DSH050108)';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address.ce_id IS 'HRSA''s numeric id of the covered entity (ceId); with id340b, the entity''s key';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address.content_key IS 'SHA-256 (hex) of the record''s content: the key of a record without an id of its own, so a changed record is a deletion plus an insertion';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address.address_line1 IS 'first address line';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address.address_line2 IS 'second address line';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address.city IS 'city';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address.state IS 'US state or territory code';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address.zip IS 'ZIP code (leading zeros kept)';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address.zip4 IS 'ZIP+4 extension';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address.is_340b_street_address IS 'whether this shipping address is the entity''s 340B street address';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address.effective_stp IS 'start of this version''s validity (UTC, inclusive): the date of the export that brought it';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address.expiration_stp IS 'end of this version''s validity (UTC, exclusive); 9999-12-31 23:59:59 while it is the current version';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address.current_version_flg IS 'Y for the newest version of its key (also when that version is a deletion), N otherwise';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address.change_type IS 'what made this version: INSERT (new key), UPDATE (changed values) or DELETE (the key left the export; the row keeps its last values)';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address._sequence IS 'the engine''s order of this key''s changes (lineage)';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address._batch_id IS 'micro-batch of the Delta history that wrote this version (lineage)';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address.exported_version IS 'Delta version of the history table that last changed this row';
COMMENT ON VIEW {schema}.dim_ce_shipping_address_live IS 'shipping addresses of a covered entity: the live current rows of dim_ce_shipping_address (current_version_flg = ''Y'' AND change_type <> ''DELETE'').';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address_live.id340b IS '340B ID of the covered entity, as HRSA assigns it (e.g. DSH050108)';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address_live.ce_id IS 'HRSA''s numeric id of the covered entity (ceId); with id340b, the entity''s key';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address_live.content_key IS 'SHA-256 (hex) of the record''s content: the key of a record without an id of its own, so a changed record is a deletion plus an insertion';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address_live.address_line1 IS 'first address line';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address_live.address_line2 IS 'second address line';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address_live.city IS 'city';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address_live.state IS 'US state or territory code';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address_live.zip IS 'ZIP code (leading zeros kept)';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address_live.zip4 IS 'ZIP+4 extension';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address_live.is_340b_street_address IS 'whether this shipping address is the entity''s 340B street address';
COMMENT ON COLUMN {schema}.dim_ce_shipping_address_live.effective_stp IS 'since when this version is current (UTC)';
COMMENT ON TABLE {schema}.dim_ce_contract_pharmacy IS 'contracts between a covered entity and a pharmacy: history. One row per version (SCD2) from the HRSA 340B OPAIS daily export. A change closes the current version (expiration_stp set, current_version_flg N) and adds the new one; a key that leaves the export gets a current version with change_type DELETE that keeps its last values. Current live rows: current_version_flg = ''Y'' AND change_type <> ''DELETE'' (the view dim_ce_contract_pharmacy_live).';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy.id340b IS '340B ID of the covered entity, as HRSA assigns it (e.g. DSH050108)';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy.ce_id IS 'HRSA''s numeric id of the covered entity (ceId); with id340b, the entity''s key';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy.contract_id IS 'HRSA''s id of the contract between the entity and the pharmacy';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy.pharmacy_id IS 'HRSA''s id of the contract pharmacy';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy.begin_date IS 'when the contract started';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy.termination_date IS 'when the contract ended (NULL while it is in force)';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy.certified_decertified_date IS 'when the contract was certified or decertified';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy.edit_date IS 'when HRSA last edited the contract (editDate)';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy.comments IS 'HRSA''s free-text comments on the contract';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy.effective_stp IS 'start of this version''s validity (UTC, inclusive): the date of the export that brought it';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy.expiration_stp IS 'end of this version''s validity (UTC, exclusive); 9999-12-31 23:59:59 while it is the current version';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy.current_version_flg IS 'Y for the newest version of its key (also when that version is a deletion), N otherwise';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy.change_type IS 'what made this version: INSERT (new key), UPDATE (changed values) or DELETE (the key left the export; the row keeps its last values)';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy._sequence IS 'the engine''s order of this key''s changes (lineage)';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy._batch_id IS 'micro-batch of the Delta history that wrote this version (lineage)';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy.exported_version IS 'Delta version of the history table that last changed this row';
COMMENT ON VIEW {schema}.dim_ce_contract_pharmacy_live IS 'contracts between a covered entity and a pharmacy: the live current rows of dim_ce_contract_pharmacy (current_version_flg = ''Y'' AND change_type <> ''DELETE'').';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy_live.id340b IS '340B ID of the covered entity, as HRSA assigns it (e.g. DSH050108)';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy_live.ce_id IS 'HRSA''s numeric id of the covered entity (ceId); with id340b, the entity''s key';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy_live.contract_id IS 'HRSA''s id of the contract between the entity and the pharmacy';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy_live.pharmacy_id IS 'HRSA''s id of the contract pharmacy';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy_live.begin_date IS 'when the contract started';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy_live.termination_date IS 'when the contract ended (NULL while it is in force)';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy_live.certified_decertified_date IS 'when the contract was certified or decertified';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy_live.edit_date IS 'when HRSA last edited the contract (editDate)';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy_live.comments IS 'HRSA''s free-text comments on the contract';
COMMENT ON COLUMN {schema}.dim_ce_contract_pharmacy_live.effective_stp IS 'since when this version is current (UTC)';
COMMENT ON TABLE {schema}.dim_pharmacy IS 'contract pharmacies: history. One row per version (SCD2) from the HRSA 340B OPAIS daily export. A change closes the current version (expiration_stp set, current_version_flg N) and adds the new one; a key that leaves the export gets a current version with change_type DELETE that keeps its last values. Current live rows: current_version_flg = ''Y'' AND change_type <> ''DELETE'' (the view dim_pharmacy_live).';
COMMENT ON COLUMN {schema}.dim_pharmacy.pharmacy_id IS 'HRSA''s id of the contract pharmacy';
COMMENT ON COLUMN {schema}.dim_pharmacy.name IS 'name of the pharmacy';
COMMENT ON COLUMN {schema}.dim_pharmacy.address_line1 IS 'first address line';
COMMENT ON COLUMN {schema}.dim_pharmacy.address_line2 IS 'second address line';
COMMENT ON COLUMN {schema}.dim_pharmacy.city IS 'city';
COMMENT ON COLUMN {schema}.dim_pharmacy.state IS 'US state or territory code';
COMMENT ON COLUMN {schema}.dim_pharmacy.zip IS 'ZIP code (leading zeros kept)';
COMMENT ON COLUMN {schema}.dim_pharmacy.zip4 IS 'ZIP+4 extension';
COMMENT ON COLUMN {schema}.dim_pharmacy.phone_number IS 'phone number of the pharmacy';
COMMENT ON COLUMN {schema}.dim_pharmacy.effective_stp IS 'start of this version''s validity (UTC, inclusive): the date of the export that brought it';
COMMENT ON COLUMN {schema}.dim_pharmacy.expiration_stp IS 'end of this version''s validity (UTC, exclusive); 9999-12-31 23:59:59 while it is the current version';
COMMENT ON COLUMN {schema}.dim_pharmacy.current_version_flg IS 'Y for the newest version of its key (also when that version is a deletion), N otherwise';
COMMENT ON COLUMN {schema}.dim_pharmacy.change_type IS 'what made this version: INSERT (new key), UPDATE (changed values) or DELETE (the key left the export; the row keeps its last values)';
COMMENT ON COLUMN {schema}.dim_pharmacy._sequence IS 'the engine''s order of this key''s changes (lineage)';
COMMENT ON COLUMN {schema}.dim_pharmacy._batch_id IS 'micro-batch of the Delta history that wrote this version (lineage)';
COMMENT ON COLUMN {schema}.dim_pharmacy.exported_version IS 'Delta version of the history table that last changed this row';
COMMENT ON VIEW {schema}.dim_pharmacy_live IS 'contract pharmacies: the live current rows of dim_pharmacy (current_version_flg = ''Y'' AND change_type <> ''DELETE'').';
COMMENT ON COLUMN {schema}.dim_pharmacy_live.pharmacy_id IS 'HRSA''s id of the contract pharmacy';
COMMENT ON COLUMN {schema}.dim_pharmacy_live.name IS 'name of the pharmacy';
COMMENT ON COLUMN {schema}.dim_pharmacy_live.address_line1 IS 'first address line';
COMMENT ON COLUMN {schema}.dim_pharmacy_live.address_line2 IS 'second address line';
COMMENT ON COLUMN {schema}.dim_pharmacy_live.city IS 'city';
COMMENT ON COLUMN {schema}.dim_pharmacy_live.state IS 'US state or territory code';
COMMENT ON COLUMN {schema}.dim_pharmacy_live.zip IS 'ZIP code (leading zeros kept)';
COMMENT ON COLUMN {schema}.dim_pharmacy_live.zip4 IS 'ZIP+4 extension';
COMMENT ON COLUMN {schema}.dim_pharmacy_live.phone_number IS 'phone number of the pharmacy';
COMMENT ON COLUMN {schema}.dim_pharmacy_live.effective_stp IS 'since when this version is current (UTC)';
COMMENT ON VIEW {schema}.ce_contract_pharmacy_live IS 'current covered entities with their current contract pharmacies: dim_ce_live joined with dim_ce_contract_pharmacy_live on (id340b, ce_id) and dim_pharmacy_live on pharmacy_id; deleted entities, contracts and pharmacies are left out.';
COMMENT ON COLUMN {schema}.ce_contract_pharmacy_live.id340b IS '340B ID of the covered entity, as HRSA assigns it (e.g. DSH050108) (dim_ce.id340b)';
COMMENT ON COLUMN {schema}.ce_contract_pharmacy_live.ce_id IS 'HRSA''s numeric id of the covered entity (ceId); with id340b, the entity''s key (dim_ce.ce_id)';
COMMENT ON COLUMN {schema}.ce_contract_pharmacy_live.entity_type IS 'covered entity type (e.g. DSH, CAH, FQHC) (dim_ce.entity_type)';
COMMENT ON COLUMN {schema}.ce_contract_pharmacy_live.ce_name IS 'name of the covered entity (dim_ce.name)';
COMMENT ON COLUMN {schema}.ce_contract_pharmacy_live.ce_sub_name IS 'sub-name of the covered entity (site, department) (dim_ce.sub_name)';
COMMENT ON COLUMN {schema}.ce_contract_pharmacy_live.contract_id IS 'HRSA''s id of the contract between the entity and the pharmacy (dim_ce_contract_pharmacy.contract_id)';
COMMENT ON COLUMN {schema}.ce_contract_pharmacy_live.contract_begin_date IS 'when the contract started (dim_ce_contract_pharmacy.begin_date)';
COMMENT ON COLUMN {schema}.ce_contract_pharmacy_live.contract_termination_date IS 'when the contract ended (NULL while it is in force) (dim_ce_contract_pharmacy.termination_date)';
COMMENT ON COLUMN {schema}.ce_contract_pharmacy_live.pharmacy_id IS 'HRSA''s id of the contract pharmacy (dim_pharmacy.pharmacy_id)';
COMMENT ON COLUMN {schema}.ce_contract_pharmacy_live.pharmacy_name IS 'name of the pharmacy (dim_pharmacy.name)';
COMMENT ON COLUMN {schema}.ce_contract_pharmacy_live.pharmacy_address_line1 IS 'first address line (dim_pharmacy.address_line1)';
COMMENT ON COLUMN {schema}.ce_contract_pharmacy_live.pharmacy_city IS 'city (dim_pharmacy.city)';
COMMENT ON COLUMN {schema}.ce_contract_pharmacy_live.pharmacy_state IS 'US state or territory code (dim_pharmacy.state)';
COMMENT ON COLUMN {schema}.ce_contract_pharmacy_live.pharmacy_zip IS 'ZIP code (leading zeros kept) (dim_pharmacy.zip)';
COMMENT ON COLUMN {schema}.ce_contract_pharmacy_live.pharmacy_phone_number IS 'phone number of the pharmacy (dim_pharmacy.phone_number)';
