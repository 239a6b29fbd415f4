#!/usr/bin/env node
// Thin entry: all logic (and the exit status) lives in dist/cli.js.
import { main } from '../dist/cli.js';
main(process.argv);
