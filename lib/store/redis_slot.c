/* redis_slot.c - see redis_slot.h. */
#include "store/redis_slot.h"

#include <stdlib.h>
#include <string.h>

/* CRC16-XMODEM (polynomial 0x1021, initial 0, no reflection): the cluster
 * specification's, whose check value for "123456789" is 0x31C3. */
static uint16_t crc16(const char *p, size_t n) {
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)((uint8_t)p[i] << 8);
        for (int b = 0; b < 8; b++) crc = (uint16_t)(crc & 0x8000u ? ((unsigned)crc << 1) ^ 0x1021u : (unsigned)crc << 1);
    }
    return crc;
}

uint16_t redis_key_slot(const char *key, size_t len) {
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t from = (size_t)(open - key) + 1;
        const char *close = memchr(open + 1, '}', len - from);
        if (close && close > open + 1) return crc16(open + 1, (size_t)(close - open - 1)) & (REDIS_CLUSTER_SLOTS - 1);
    }
    return crc16(key, len) & (REDIS_CLUSTER_SLOTS - 1);
}

int redis_parse_redirect(const char *text, size_t len, uint16_t *slot, char host[256], int *port) {
    size_t skip = len >= 6 && !memcmp(text, "MOVED ", 6) ? 6 : len >= 4 && !memcmp(text, "ASK ", 4) ? 4 : 0;
    if (!skip || len - skip > 300) return -1;
    char buf[301];
    memcpy(buf, text + skip, len - skip);
    buf[len - skip] = '\0';
    char *end = NULL;
    long s = strtol(buf, &end, 10);
    if (end == buf || *end != ' ' || s < 0 || s >= (long)REDIS_CLUSTER_SLOTS) return -1;
    char *addr = end + 1, *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= 256) return -1;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || p <= 0 || p > 65535) return -1;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    *slot = (uint16_t)s;
    *port = (int)p;
    return 0;
}
