#!/usr/bin/env node
// Runs the bundled CLI (npm run build writes dist/warden.js).
import '../dist/warden.js';
