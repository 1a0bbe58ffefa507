// The CDK app: `cdk deploy --all -c env=dev|staging|prod`. It packages the
// runtime first, so what is deployed is always built from this checkout.
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { resolve } from 'node:path';
import { environmentNames, loadEnvironment } from '../stacks/environments';
import { addVolleyEnvironment, VOLLEY_APP_CONTEXT } from '../stacks/volley-app';
import { packageRuntime } from './package-asset';

const repoRoot = resolve(__dirname, '..');
const app = new App({ context: VOLLEY_APP_CONTEXT });
const envName: unknown = app.node.tryGetContext('env');
if (typeof envName !== 'string') {
  throw new Error(`choose an environment: cdk <command> -c env=${environmentNames().join('|')}`);
}
const config = loadEnvironment(envName, repoRoot);
// VOLLEY_PACKAGE_DIR lets CI deploy the exact package it tested.
const packageDir = process.env.VOLLEY_PACKAGE_DIR ?? packageRuntime({ repoRoot });

Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
addVolleyEnvironment(app, { config, repoRoot, packageDir });
app.synth();
