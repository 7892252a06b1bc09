/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer driver for the INI loader (config_load_file(), libinih under
 * our option table). The input is written to a private temporary file and
 * loaded over the defaults. A refused file leaves the configuration exactly
 * as it was and says "path:..." why; an accepted one holds only values the
 * table accepts: every option, dumped with config_dump() and set again one
 * by one with config_set() over fresh defaults, gives the same dump.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokend/config.h"
#include "tokend/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void remove_file(void)
{
	unlink(path);
}

/* config_dump() into a malloc'd string. */
static char *dump(const struct config *cfg, size_t *len)
{
	char *p = NULL;
	FILE *fp = open_memstream(&p, len);

	if (fp == NULL)
		abort();
	config_dump(cfg, fp);
	fclose(fp);
	return p;
}

static void reapply(const char *text, size_t len)
{
	struct config cfg;
	char err[512];
	const char *line = text;
	char *again;
	size_t alen;

	config_defaults(&cfg);
	while (line < text + len) {
		const char *nl = memchr(line, '\n', (size_t)(text + len - line));
		const char *eq = strstr(line, " = ");
		char sec[64], key[64], *val;
		const char *dot = memchr(line, '.', (size_t)(nl - line));
		if (nl == NULL || eq == NULL || dot == NULL || eq > nl)
			abort();
		snprintf(sec, sizeof sec, "%.*s", (int)(dot - line), line);
		snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
		val = strndup(eq + 3, (size_t)(nl - eq - 3));
		if (val == NULL || config_set(&cfg, sec, key, val, "fuzz", err, sizeof err) != 0) {
			fprintf(stderr, "%s\n", err);
			abort();
		}
		free(val);
		line = nl + 1;
	}
	again = dump(&cfg, &alen);
	if (alen != len || memcmp(again, text, len) != 0)
		abort();
	free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config cfg, before;
	char err[1024] = "";
	char *text;
	size_t len;
	int fd, rc;

	if (path[0] == '\0') {
		snprintf(path, sizeof path, "/tmp/tokend-fuzz-config-XXXXXX");
		fd = mkstemp(path);
		if (fd < 0)
			abort();
		close(fd);
		atexit(remove_file);
	}
	fd = open(path, O_WRONLY | O_TRUNC);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size || close(fd) != 0)
		abort();
	config_defaults(&cfg);
	before = cfg;
	rc = config_load_file(&cfg, path, err, sizeof err);
	if (rc != 0) {
		if ((rc != TOKEND_EINVAL && rc != TOKEND_ENOMEM) ||
		    strncmp(err, path, strlen(path)) != 0 || memcmp(&cfg, &before, sizeof cfg) != 0)
			abort();
		return 0;
	}
	text = dump(&cfg, &len);
	reapply(text, len);
	free(text);
	return 0;
}
