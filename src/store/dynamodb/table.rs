//! [`DynamoDbStore::create_table`]: the store's table, for development.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};

use super::{DynamoDbStore, DynamoDbStoreError};

/// How long [`DynamoDbStore::create_table`] waits for a new table to become
/// active.
const ACTIVE_WITHIN: Duration = Duration::from_secs(120);

impl DynamoDbStore {
    /// Creates the store's table if it does not exist (on-demand billing, the
    /// [`partition_key`](Self::partition_key) as its string partition key),
    /// waits until it is active, and enables DynamoDB's TTL on the
    /// [`ttl_attribute`](Self::ttl_attribute) unless it is already enabled.
    ///
    /// Each call is bounded like the store's own; waiting for the table takes
    /// two minutes at most.
    ///
    /// Meant for development and tests: in production, declare the table
    /// with your infrastructure (the README has a CloudFormation / SAM
    /// resource), so the application needs no permission to create tables.
    pub async fn create_table(&self) -> Result<(), DynamoDbStoreError> {
        let definition = |what| {
            move |e: aws_sdk_dynamodb::error::BuildError| {
                DynamoDbStoreError::invalid(what, e.to_string())
            }
        };
        let created = self
            .client
            .create_table()
            .table_name(&*self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(&*self.partition_key)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(definition("CreateTable"))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(&*self.partition_key)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(definition("CreateTable"))?,
            )
            .customize()
            .config_override(self.call_settings())
            .send()
            .await;
        if let Err(error) = created {
            let exists = error
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception());
            if !exists {
                return Err(DynamoDbStoreError::sdk("CreateTable", error));
            }
        }
        self.wait_until_active().await?;

        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(&*self.table)
            .customize()
            .config_override(self.call_settings())
            .send()
            .await
            .map_err(|e| DynamoDbStoreError::sdk("DescribeTimeToLive", e))?;
        let enabled = ttl.time_to_live_description().is_some_and(|ttl| {
            matches!(
                ttl.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            ) && ttl.attribute_name() == Some(&*self.ttl_attribute)
        });
        if !enabled {
            self.client
                .update_time_to_live()
                .table_name(&*self.table)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(&*self.ttl_attribute)
                        .build()
                        .map_err(definition("UpdateTimeToLive"))?,
                )
                .customize()
                .config_override(self.call_settings())
                .send()
                .await
                .map_err(|e| DynamoDbStoreError::sdk("UpdateTimeToLive", e))?;
        }
        Ok(())
    }

    async fn wait_until_active(&self) -> Result<(), DynamoDbStoreError> {
        let deadline = tokio::time::Instant::now() + ACTIVE_WITHIN;
        let mut pause = Duration::from_millis(50);
        loop {
            let described = self
                .client
                .describe_table()
                .table_name(&*self.table)
                .customize()
                .config_override(self.call_settings())
                .send()
                .await
                .map_err(|e| DynamoDbStoreError::sdk("DescribeTable", e))?;
            let status = described.table().and_then(|t| t.table_status());
            if status == Some(&TableStatus::Active) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DynamoDbStoreError::invalid(
                    "DescribeTable",
                    format!("the table is still {status:?} after {ACTIVE_WITHIN:?}"),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}
