/* redis_slot.h - Redis Cluster's key -> hash slot map (the cluster
 * specification: CRC16-XMODEM of the key, or of the text between the first
 * '{' and the next '}' when that is non-empty, modulo 16384), so that the
 * redis backend can send each key to the node that owns its slot. */
#ifndef KVTC_STORE_REDIS_SLOT_H
#define KVTC_STORE_REDIS_SLOT_H

#include <stddef.h>
#include <stdint.h>

#define REDIS_CLUSTER_SLOTS 16384u

uint16_t redis_key_slot(const char *key, size_t len);

/* A "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>" error text:
 * 0 with the slot, host (NUL-terminated, < 256 bytes) and port; -1 when the
 * text is anything else. */
int redis_parse_redirect(const char *text, size_t len, uint16_t *slot, char host[256], int *port);

#endif
