// Bookinfo's ratings: a product's ratings as JSON (Node.js http module only; no tracing code).
//
// usage: node ratings.js PORT
const http = require('http');

const body = JSON.stringify({ id: 0, ratings: { Reviewer1: 5, Reviewer2: 4 } });
http
  .createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    });
  })
  .listen(Number(process.argv[2]), '127.0.0.1');
