/* SPDX-License-Identifier: MIT */
/*
 * This header is the entry of the `tokend` command line: global options,
 * then a git-style command. Exit codes: 0 success, 1 failure with a one-line
 * message on stderr, 2 usage error.
 */
#ifndef TOKEND_CLI_H
#define TOKEND_CLI_H

/* Runs tokend with argv; returns the process exit code. */
int cli_main(int argc, char **argv);

#endif
