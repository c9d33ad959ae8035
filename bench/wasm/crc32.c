/* CRC-32 (IEEE, reflected) over 1 MiB of pseudo-random bytes, table driven:
 * loads, shifts, xors. */
#include "common.h"

#define SIZE (1u << 20)
static unsigned char buffer[SIZE];
static u32 table[256];

EXPORT int run(void)
{
    for (u32 i = 0; i < 256; i++) {
        u32 c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    for (u32 i = 0; i < SIZE; i++)
        buffer[i] = (unsigned char)(lcg_next() >> 24);
    u32 crc = 0;
    for (int round = 0; round < 8; round++) {
        crc = ~crc;
        for (u32 i = 0; i < SIZE; i++)
            crc = table[(crc ^ buffer[i]) & 0xff] ^ (crc >> 8);
        crc = ~crc;
    }
    return (int)crc;
}
