-- The job store as jobengine 0.1.0 made it (create_all of jobengine/store/schema.py at
-- commit de79425, the last release without migrations), sqlite dialect. Frozen: never edit.

CREATE TABLE companies (
	id INTEGER NOT NULL,
	handle VARCHAR(64) NOT NULL,
	name VARCHAR(255) NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (handle)
);

CREATE TABLE users (
	id INTEGER NOT NULL,
	handle VARCHAR(64) NOT NULL,
	email VARCHAR(255) NOT NULL,
	first_name VARCHAR(100) NOT NULL,
	last_name VARCHAR(100) NOT NULL,
	user_type VARCHAR(32) NOT NULL,
	password_hash VARCHAR(255) NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (handle),
	UNIQUE (email)
);

CREATE TABLE api_tokens (
	id INTEGER NOT NULL,
	user_id INTEGER NOT NULL,
	name VARCHAR(255) NOT NULL,
	token_hash VARCHAR(64) NOT NULL,
	created_at DATETIME NOT NULL,
	last_used_at DATETIME,
	revoked_at DATETIME,
	PRIMARY KEY (id),
	FOREIGN KEY(user_id) REFERENCES users (id),
	UNIQUE (token_hash)
);

CREATE INDEX ix_api_tokens_user_id ON api_tokens (user_id);

CREATE TABLE folders (
	id INTEGER NOT NULL,
	company_id INTEGER NOT NULL,
	path VARCHAR(1024) NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (company_id, path),
	FOREIGN KEY(company_id) REFERENCES companies (id)
);

CREATE TABLE image_formats (
	id INTEGER NOT NULL,
	company_id INTEGER NOT NULL,
	name VARCHAR(255) NOT NULL,
	name_key VARCHAR(255) NOT NULL,
	url_modifier VARCHAR(512) NOT NULL,
	updated_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (company_id, name_key),
	FOREIGN KEY(company_id) REFERENCES companies (id)
);

CREATE TABLE jobs (
	id INTEGER NOT NULL,
	company_id INTEGER NOT NULL,
	live_key VARCHAR(255),
	handle VARCHAR(400) NOT NULL,
	name VARCHAR(255) NOT NULL,
	kind VARCHAR(64) NOT NULL,
	payload JSON NOT NULL,
	submit_user_id INTEGER,
	run_as_user_id INTEGER,
	locale VARCHAR(16),
	description TEXT,
	exec_time DATETIME,
	exec_schedule VARCHAR(255),
	time_zone VARCHAR(64) NOT NULL,
	trigger_state VARCHAR(16) NOT NULL,
	next_fire_at DATETIME,
	fired_through DATETIME,
	created_at DATETIME NOT NULL,
	deleted_at DATETIME,
	PRIMARY KEY (id),
	UNIQUE (company_id, live_key),
	FOREIGN KEY(company_id) REFERENCES companies (id),
	FOREIGN KEY(submit_user_id) REFERENCES users (id),
	FOREIGN KEY(run_as_user_id) REFERENCES users (id)
);

CREATE INDEX ix_jobs_due ON jobs (trigger_state, next_fire_at);

CREATE TABLE memberships (
	user_id INTEGER NOT NULL,
	company_id INTEGER NOT NULL,
	PRIMARY KEY (user_id, company_id),
	FOREIGN KEY(user_id) REFERENCES users (id),
	FOREIGN KEY(company_id) REFERENCES companies (id)
);

CREATE TABLE set_presets (
	id INTEGER NOT NULL,
	company_id INTEGER NOT NULL,
	name VARCHAR(255) NOT NULL,
	name_key VARCHAR(255) NOT NULL,
	set_type VARCHAR(32) NOT NULL,
	pattern VARCHAR(512) NOT NULL,
	member_order VARCHAR(16) NOT NULL,
	views JSON NOT NULL,
	name_template VARCHAR(255) NOT NULL,
	updated_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (company_id, name_key),
	FOREIGN KEY(company_id) REFERENCES companies (id)
);

CREATE TABLE assets (
	id INTEGER NOT NULL,
	handle VARCHAR(128) NOT NULL,
	company_id INTEGER NOT NULL,
	folder_id INTEGER NOT NULL,
	name VARCHAR(512) NOT NULL,
	type VARCHAR(32) NOT NULL,
	file_key VARCHAR(1024),
	size BIGINT NOT NULL,
	publish_state VARCHAR(32) NOT NULL,
	published_at DATETIME,
	updated_at DATETIME NOT NULL,
	created_at DATETIME NOT NULL,
	ingest_ref VARCHAR(64),
	optimized_key VARCHAR(1024),
	optimized_version DATETIME,
	derived_from INTEGER,
	crop VARCHAR(64),
	optimized_crop VARCHAR(64),
	PRIMARY KEY (id),
	UNIQUE (company_id, folder_id, name),
	UNIQUE (handle),
	FOREIGN KEY(company_id) REFERENCES companies (id),
	FOREIGN KEY(folder_id) REFERENCES folders (id)
);

CREATE INDEX ix_assets_publish ON assets (company_id, publish_state);

CREATE TABLE runs (
	id INTEGER NOT NULL,
	job_id INTEGER NOT NULL,
	company_id INTEGER NOT NULL,
	run_name VARCHAR(300) NOT NULL,
	fire_key VARCHAR(100) NOT NULL,
	task_id VARCHAR(64) NOT NULL,
	state VARCHAR(16) NOT NULL,
	eta DATETIME,
	dispatched_at DATETIME,
	started_at DATETIME,
	ended_at DATETIME,
	claimed_by VARCHAR(255),
	lease_until DATETIME,
	planned BOOLEAN NOT NULL,
	stop_requested BOOLEAN NOT NULL,
	paused BOOLEAN NOT NULL,
	finish_sent_at DATETIME,
	swept_at DATETIME,
	notified_at DATETIME,
	callback_state VARCHAR(16),
	callback_attempts INTEGER,
	callback_sent_at DATETIME,
	callback_next_at DATETIME,
	callback_result VARCHAR(300),
	total_items INTEGER NOT NULL,
	finished_items INTEGER NOT NULL,
	success_count INTEGER NOT NULL,
	error_count INTEGER NOT NULL,
	warning_count INTEGER NOT NULL,
	duplicate_count INTEGER NOT NULL,
	update_count INTEGER NOT NULL,
	total_size BIGINT NOT NULL,
	progress INTEGER NOT NULL,
	progress_message VARCHAR(255) NOT NULL,
	last_progress_update DATETIME,
	fatal_error BOOLEAN NOT NULL,
	output JSON NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (company_id, run_name),
	UNIQUE (job_id, fire_key),
	FOREIGN KEY(job_id) REFERENCES jobs (id),
	FOREIGN KEY(company_id) REFERENCES companies (id)
);

CREATE INDEX ix_runs_state ON runs (state);

CREATE TABLE log_details (
	id INTEGER NOT NULL,
	run_id INTEGER NOT NULL,
	company_id INTEGER NOT NULL,
	log_type VARCHAR(64) NOT NULL,
	message TEXT NOT NULL,
	message_id VARCHAR(255),
	message_args JSON,
	asset_name VARCHAR(512),
	asset_type VARCHAR(32),
	asset_handle VARCHAR(128),
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(run_id) REFERENCES runs (id),
	FOREIGN KEY(company_id) REFERENCES companies (id)
);

CREATE INDEX ix_log_details_asset ON log_details (asset_handle);

CREATE INDEX ix_log_details_run ON log_details (run_id, id);

CREATE TABLE run_items (
	id INTEGER NOT NULL,
	run_id INTEGER NOT NULL,
	seq INTEGER NOT NULL,
	"key" VARCHAR(400) NOT NULL,
	state VARCHAR(16) NOT NULL,
	attempts INTEGER NOT NULL,
	claimed_by VARCHAR(255),
	lease_until DATETIME,
	result JSON NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (run_id, seq),
	FOREIGN KEY(run_id) REFERENCES runs (id)
);

CREATE TABLE set_members (
	set_id INTEGER NOT NULL,
	position INTEGER NOT NULL,
	member_id INTEGER NOT NULL,
	PRIMARY KEY (set_id, position),
	FOREIGN KEY(set_id) REFERENCES assets (id),
	FOREIGN KEY(member_id) REFERENCES assets (id)
);

CREATE INDEX ix_set_members_member_id ON set_members (member_id);
