-- PostgreSQL DDL of the 340B OPAIS dimensions (SCD2 history) and the export bookkeeping.
-- Generated from lakehouse/sources/opais_entities.py by lakehouse.sinks.postgres.render_ddl(); a test
-- fails when this file and the code differ. Replace {schema} with the target schema (init_db does).
-- Every statement is idempotent. A version is keyed by (key..., effective_stp); an open version has
-- expiration_stp '9999-12-31 23:59:59' and current_version_flg 'Y'. Rows are inserted or updated, never deleted.
-- _sequence and _batch_id are the Delta history's lineage; exported_version is the Delta version of the
-- history table that last changed the row.

CREATE SCHEMA IF NOT EXISTS {schema};

-- lakehouse_export: last exported Delta version per table
CREATE TABLE IF NOT EXISTS {schema}.lakehouse_export (
    table_name       TEXT PRIMARY KEY,
    delta_path       TEXT NOT NULL,
    exported_version BIGINT NOT NULL CHECK (exported_version >= 0),
    rows_received    BIGINT NOT NULL,
    rows_written     BIGINT NOT NULL,
    exported_at      TIMESTAMPTZ NOT NULL,
    run_id           TEXT NOT NULL
);

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
