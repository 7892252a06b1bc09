/* SPDX-License-Identifier: MIT */
/*
 * This module is the PostgreSQL backend's ops table (backend.h): the
 * functions of conn.c, writer.c, migrate.c, users.c, sessions.c and
 * tokens.c under the names store.c calls. The database is a server other
 * hosts may share, so single_host is false and local_path is "".
 */
#include "store/postgres/pg.h"

const struct store_backend store_postgres_backend = {
	.name = "postgres",
	.single_host = false,
	.open = store_pg_open,
	.close = store_pg_close,
	.ping = store_pg_ping,
	.migrate = store_pg_migrate,
	.local_path = store_pg_local_path,
	.read_begin = store_pg_read_begin,
	.read_end = store_pg_read_end,
	.write_begin = store_pg_write_begin,
	.write_end = store_pg_write_end,
	.user_add = store_pg_user_add,
	.user_get = store_pg_user_get,
	.user_uuid = store_pg_user_uuid,
	.user_set_password = store_pg_user_set_password,
	.user_set_active = store_pg_user_set_active,
	.user_touch_login = store_pg_user_touch_login,
	.user_delete = store_pg_user_delete,
	.user_count = store_pg_user_count,
	.user_list = store_pg_user_list,
	.team_add = store_pg_team_add,
	.team_get = store_pg_team_get,
	.team_list = store_pg_team_list,
	.member_set = store_pg_member_set,
	.member_remove = store_pg_member_remove,
	.member_is = store_pg_member_is,
	.session_add = store_pg_session_add,
	.session_state = store_pg_session_state,
	.session_ended = store_pg_session_ended,
	.sessions_end = store_pg_sessions_end,
	.session_ends_since = store_pg_session_ends_since,
	.refresh_add = store_pg_refresh_add,
	.refresh_state = store_pg_refresh_state,
	.refresh_row = store_pg_refresh_row,
	.refresh_use = store_pg_refresh_use,
	.refresh_live = store_pg_refresh_live,
	.api_count = store_pg_api_count,
	.api_add = store_pg_api_add,
	.api_version = store_pg_api_version,
	.api_list = store_pg_api_list,
	.api_by_digest = store_pg_api_by_digest,
	.api_delete = store_pg_api_delete,
	.api_delete_all = store_pg_api_delete_all,
	.api_live = store_pg_api_live,
	.purge = store_pg_purge,
	.key_in_use = store_pg_key_in_use,
};
