/* cmd_store.h - kvtc store (tools/cmd_store.c): argv[0] = "store". */
#ifndef KVTC_TOOLS_CMD_STORE_H
#define KVTC_TOOLS_CMD_STORE_H

int cmd_store(int argc, char **argv);

#endif
