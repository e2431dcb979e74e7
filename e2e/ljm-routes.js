// URL paths of the lib-jitsi-meet page's scripts (see pages/ljm.html), for lib/browser.js serve().
'use strict';
const path = require('path');

const root = __dirname;

module.exports = {
  '/vendor/jquery.min.js': path.join(root, 'node_modules', 'jquery', 'dist', 'jquery.min.js'),
  '/vendor/lib-jitsi-meet.min.js': path.join(root, 'vendor', 'lib-jitsi-meet.min.js'),
};
