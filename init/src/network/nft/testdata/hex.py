# Prints the last sendmsg buffer of an strace -xx capture (nft's batch),
# one netlink message per line in hex. See README.md.
import sys, re

buf = []
cur = None
for line in open(sys.argv[1]):
    if line.startswith(' * ') and 'bytes in buffer' in line:
        cur = []
        buf.append(cur)
    if re.match(r' \| [0-9a-f]{5}  ', line) and cur is not None:
        cur.extend(bytes.fromhex(line[10:10 + 49].replace(' ', '')))
data = bytes(buf[-1])
i = 0
while i < len(data):
    n = int.from_bytes(data[i:i+4], 'little')
    print(data[i:i+n].hex())
    i += (n + 3) & ~3
