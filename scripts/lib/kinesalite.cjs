// kinesalite through its library API, so it binds 127.0.0.1 and keeps its data in memory.
'use strict';
const path = require('path');
const port = Number(process.argv[2]);
const kinesalite = require(path.join(process.argv[3], 'node_modules', 'kinesalite'));
kinesalite({ createStreamMs: 10, deleteStreamMs: 10, updateStreamMs: 10, shardLimit: 100 })
  .listen(port, '127.0.0.1', (err) => {
    if (err) { console.error(err); process.exit(1); }
    console.log(`kinesalite listening on 127.0.0.1:${port}`);
  });
