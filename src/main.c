/* SPDX-License-Identifier: MIT */
/*
 * This file is start-up only: everything else, from option parsing to the
 * server, lives in the library (src/cli/ onwards) so tests can reach it.
 */
#include "tokend/cli.h"

int main(int argc, char **argv)
{
	return cli_main(argc, argv);
}
