{#-
  Single-connection forms of three fivetran_utils macros that dbt_jira 1.10.1 calls but that
  fivetran_utils 0.4.10 (the release vendored beside it) does not define. `.ci/dbt/run.sh` adds
  this file to a copy of the vendored fivetran_utils only when that release lacks them; dbt_jira
  itself is never changed. With one Jira site there is one source per table, nothing to union
  and no source relation to partition by.
-#}

{% macro union_connections(connection_dictionary, single_source_name, single_table_name, default_identifier=none) %}
select * from {{ source(single_source_name, single_table_name) }}
{% endmacro %}

{% macro apply_source_relation(package_name=none) %}
, cast('' as {{ dbt.type_string() }}) as source_relation
{% endmacro %}

{#- Every row has the same source relation: partitioning by it changes nothing. -#}
{% macro partition_by_source_relation(package_name=none, alias=none) %}{% endmacro %}
